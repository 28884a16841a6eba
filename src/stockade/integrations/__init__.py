"""stockade.integrations: the guard behind the ways agents get tools.

- :mod:`stockade.integrations.openai`: OpenAI-style tool calls (chat completions,
  responses, local model servers); ``Guard.handle_tool_calls`` delegates here.
- :mod:`stockade.integrations.langchain`: a ``create_agent`` middleware, the guard's
  tools as LangChain tools, a wrapper for any ``BaseTool`` (``stockade[langchain]``).
- :mod:`stockade.integrations.mcp`: the MCP proxy with tool pinning
  (``stockade[mcp]``); ``mcp_pins`` (pins, description scan), ``mcp_sandbox``
  (the server in the exec sandbox), ``mcp_config`` (the ``mcp:`` policy section),
  ``mcp_cli`` (``stockade mcp-proxy``, ``stockade mcp pin``).
- :mod:`stockade.integrations.schema`: JSON schemas of tools and the checker for them.

See docs/integrations.md.
"""
