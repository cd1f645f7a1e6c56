"""rdio-api HTTP server: Rdio Scanner-compatible call upload plus a read and job API."""
