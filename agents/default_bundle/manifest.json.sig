{
  "format": "fakeface-bundle-signature",
  "algorithm": "ed25519",
  "key_id": "d10d92a8675cc2b5",
  "signature": "6aRLHpy2zi/QBhkeRhFoYCrwL+ddyLjCrqPLdVBAG1Quxe70e9r8aC8j5/7E0Bed4Gs4avRi8VqTzSTScLXsCg=="
}
