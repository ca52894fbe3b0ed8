{
  "format": "fakeface-bundle-signature",
  "algorithm": "ed25519",
  "key_id": "0c781ddc2b659c5d",
  "signature": "/tZG7nCX14tw2vxIlbaWOU7uDv0WeIf//B4NrXOkqPKka0BTRn8btyxCefoGIgDQxNMrTHKcgQX2I7VWS542Aw=="
}
