{
  "format": "fakeface-bundle-signature",
  "algorithm": "ed25519",
  "key_id": "d10d92a8675cc2b5",
  "signature": "Kkt76rglrFMBGkp78uOVoMtiA4lLDjrX49h96WFguy9EL3tOj/iWh5CvaoSREp5wCfHdp++YBNWmsQgqhDKcDA=="
}
