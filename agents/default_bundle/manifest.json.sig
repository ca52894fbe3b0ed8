{
  "format": "fakeface-bundle-signature",
  "algorithm": "ed25519",
  "key_id": "77bb830063b6ded7",
  "signature": "+dTi+qSPpPSmqaog3Rhdm8PXdC0sd/sUv+mulXhZ0noewfqNv2cToGglNMkL4O4AbLvW8d0+3njesMSBgYjpDQ=="
}
