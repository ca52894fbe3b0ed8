{
  "format": "fakeface-bundle-signature",
  "algorithm": "ed25519",
  "key_id": "0c781ddc2b659c5d",
  "signature": "RUSYatNIW2Dunjqc5THr47d55HN58gTRW68SH54PB4TC9EZo+I12unjTtJJkNAo6qN1xu6cIxik64+gkzU9xBQ=="
}
