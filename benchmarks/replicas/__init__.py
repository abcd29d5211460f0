"""N app replicas behind a load balancer (issue 20): a round-robin proxy (proxy.py) and what a hop between replicas costs (forward_cost.py)."""
