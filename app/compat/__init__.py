"""Adapters for clients written for other servers (upstream api_v2, OpenAI), onto the same engine calls."""
