"""Object storage: a local folder or S3 behind one interface, staging and atomic publishing."""
