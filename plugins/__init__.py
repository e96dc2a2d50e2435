"""Built-in plugins of endpointkit, registered through the same hooks as any user plugin."""
