"""Media I/O shared by every stage of the flow: video decode/encode (PyAV) and image decode (Pillow)."""
