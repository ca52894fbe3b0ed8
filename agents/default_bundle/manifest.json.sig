{
  "format": "fakeface-bundle-signature",
  "algorithm": "ed25519",
  "key_id": "0c781ddc2b659c5d",
  "signature": "9vQ3sFn4GFArMiaOrXftYkNOXnrW11lVSim8xXTabtdX3m7EaSX1tye0tg5ZO7MlitwllishRIoNF5INW0/WBQ=="
}
