"""Test support, outside the product: the real server as a subprocess (`testing.server`) and the paths
of the repo, the toy models and TF Serving's test models (`testing.paths`)."""
