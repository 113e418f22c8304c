"""Container images of the app: the container engine, the Debian base, and the MAP image built on it."""
