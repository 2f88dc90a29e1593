"""The RabbitMQ pipeline: ``Publisher`` (emitters' sink) and ``sealog consume`` (broker to store).

pika is imported inside functions only, so the core installs and ``sealog --help`` works
without the ``rabbitmq`` extra.
"""
