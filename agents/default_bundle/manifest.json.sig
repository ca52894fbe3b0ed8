{
  "format": "fakeface-bundle-signature",
  "algorithm": "ed25519",
  "key_id": "77bb830063b6ded7",
  "signature": "bUfF3yY3MtjYNr8Ed7OAgU27b2CPINlxLKaoT+y2I4w62B4GGEMvcpl83NivbnWSUv/hZsWIiCuV6zb9V1EACg=="
}
