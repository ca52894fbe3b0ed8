{
  "format": "fakeface-bundle-signature",
  "algorithm": "ed25519",
  "key_id": "77bb830063b6ded7",
  "signature": "GC+rlxPUaPbf3aCvzFJq1ipSUgtVzFXLgV90cWLC1VZGfUknauxzQ2PDrEUXSkOmfacOV3HxA6Y2Ezcgk13MCA=="
}
