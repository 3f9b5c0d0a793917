"""Deploying cdx on a real Kafka cluster: the desired topics of a topology, plan and apply."""
