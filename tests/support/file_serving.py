"""Serving a file the way the test servers need: whole, from a Range offset, or cut off."""


def send_cut(handler, data):
    """Announce the whole file, send half of it, and drop the connection."""
    handler.send_response(200)
    handler.send_header("Content-Length", str(len(data)))
    handler.end_headers()
    handler.wfile.write(data[: len(data) // 2])
    handler.wfile.flush()
    handler.close_connection = True
    handler.connection.shutdown(2)


def send_ranged(handler, data, headers=None, honour_range=True):
    """Send `data`, or the part a "Range: bytes=N-" header asks for (206; 416 past the end)."""
    start = 0
    rng = handler.headers.get("Range", "")
    if honour_range and rng.startswith("bytes="):
        start = int(rng[6:].split("-")[0])
        if start >= len(data):
            handler.send_response(416)
            handler.send_header("Content-Range", f"bytes */{len(data)}")
            handler.send_header("Content-Length", "0")
            handler.end_headers()
            return
        handler.send_response(206)
        handler.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
    else:
        handler.send_response(200)
    for k, v in (headers or {}).items():
        handler.send_header(k, v)
    handler.send_header("Content-Length", str(len(data) - start))
    handler.end_headers()
    if handler.command != "HEAD":
        handler.wfile.write(data[start:])
