"""Lab engine: a stand-in for the Ollama server and CLI, for tests only (never for production).

It follows Ollama's REST API field for field so that code and the official clients work against it
unchanged. See docs/lab-engine.md.
"""
