"""Schemathesis hooks for scripts/schemathesis.sh (named by scripts/schemathesis.toml)."""
import schemathesis

# A bundle is raw bytes and goes on the wire as it is, like application/octet-stream.
schemathesis.serializer.alias("application/vnd.filestore.bundle", "application/octet-stream")
