"""Argo CD and Flux manifests read into a fleet spec (``fleetsync import``)."""
