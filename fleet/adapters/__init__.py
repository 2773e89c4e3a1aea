"""One module per outside tool: build the argv or request, run it, parse the answer strictly."""
