"""Tests of the operational files: metrics, Dockerfile, compose, Prometheus, Grafana."""
