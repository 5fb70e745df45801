// Parse an AsyncAPI document with the AsyncAPI project's own parser; print each diagnostic as a JSON line;
// exit 1 when any is an error (severity 0). Usage: node asyncapi_check.js DOCUMENT (NODE_PATH: the parser).
const { Parser } = require('@asyncapi/parser');
const fs = require('fs');

(async () => {
  const parser = new Parser();
  const { document, diagnostics } = await parser.parse(fs.readFileSync(process.argv[2], 'utf8'));
  for (const d of diagnostics) {
    console.log(JSON.stringify({ severity: d.severity, code: d.code, message: d.message, path: d.path }));
  }
  const errors = diagnostics.filter((d) => d.severity === 0);
  process.exit(errors.length || !document ? 1 : 0);
})();
