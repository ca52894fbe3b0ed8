{
  "format": "fakeface-bundle-signature",
  "algorithm": "ed25519",
  "key_id": "77bb830063b6ded7",
  "signature": "YOTZau8A/IO11BPDqCRIDOLVCqFQW27jKsqVLbzZstgNy4uPxOAN5VtSouMxAVbIuVRS5kiiY4+6NdLGCIScDA=="
}
