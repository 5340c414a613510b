"""RabbitMQ: consuming a queue with acknowledgements committed atomically with a marker,
the deliveries it hands over, and the fast path that reads them straight off the wire."""
