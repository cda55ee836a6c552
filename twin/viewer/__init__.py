"""The web viewer: its static page (in `static/`) and the local read-only server of `twin serve`."""
