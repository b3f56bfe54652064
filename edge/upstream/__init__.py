"""Upstream groups: the pure balancer, then connection pools, health and DNS re-resolution."""
