{
  "format": "fakeface-bundle-signature",
  "algorithm": "ed25519",
  "key_id": "d10d92a8675cc2b5",
  "signature": "Nw56V2NDd2WeFu9iRaNu05VHfSD2260Ms+dd9pz/jWgFq26DT4oFkhWmomV9C2ve1pVbv0bI0mXVBNnlLzw9Dw=="
}
