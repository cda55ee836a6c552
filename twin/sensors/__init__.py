"""LoRaWAN sensors: catalogue, ingest, validation, store, replay and the feed for the models."""
