"""The four agents (three Keras CNNs and the forensic-features model), their preprocessing
contracts and the model bundle. Import names from their modules (``agents.labels``,
``agents.preprocessing``, ``agents.registry``, ``agents.bundle``): light users then do not pay
for Keras/TensorFlow start-up."""
