"""The peer of the end-to-end benchmark: Debezium on Kafka Connect (see ``bench/peer_debezium.py``)."""
