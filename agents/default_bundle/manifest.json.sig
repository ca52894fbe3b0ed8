{
  "format": "fakeface-bundle-signature",
  "algorithm": "ed25519",
  "key_id": "d10d92a8675cc2b5",
  "signature": "hTiVfStCEBg2HRRAvWkbd4F12h0JRvfubBF+bJ68C12bZzyC8rSOfHUefUhp+ULUvLUHk3WC0w3Wk/hFgRTkAw=="
}
