"""What users need to test their own agents: a fake LLM server and in-memory bus fixtures."""

__all__: list[str] = []
