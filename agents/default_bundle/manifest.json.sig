{
  "format": "fakeface-bundle-signature",
  "algorithm": "ed25519",
  "key_id": "d10d92a8675cc2b5",
  "signature": "fDx4K7TvK3gU2k/AyvQiVv2W3up0VzNtT/1whMxJhnNrLJZJDtWNQyGFVrDuU0SxY6BvfQhMcSqB6ZiuaFE/BA=="
}
