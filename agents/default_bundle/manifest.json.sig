{
  "format": "fakeface-bundle-signature",
  "algorithm": "ed25519",
  "key_id": "0c781ddc2b659c5d",
  "signature": "5OqHC94fpBLnOrfZznXgpgsR+7rz+J3VjI690Ft7E3XjJKPQTCLPDID4/L8wtN2aVV0h8OwpeZgZvGph6SzTBw=="
}
