{
  "format": "fakeface-bundle-signature",
  "algorithm": "ed25519",
  "key_id": "d10d92a8675cc2b5",
  "signature": "iPfWGorgtgxazyX8u0upXWw2C9DGvNypFvq+4VYbnTOYtppsiS7B2eKOsIeULZPjtEouAfJGNXfFFqHvFvLgDQ=="
}
