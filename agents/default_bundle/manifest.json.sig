{
  "format": "fakeface-bundle-signature",
  "algorithm": "ed25519",
  "key_id": "77bb830063b6ded7",
  "signature": "Lgk65E+axxGMrYh9OTyX2kjasXIuEIaU3u82t5GPvMDnhQDqs7zs+gLU47Sx6baTNbOfA3PuAy+sueTUWyIDBg=="
}
