{
  "format": "fakeface-bundle-signature",
  "algorithm": "ed25519",
  "key_id": "77bb830063b6ded7",
  "signature": "FAJPckZoGAll/fn9HZ268titZpst8Aa0vmIG7rcXr3l44WorEjsuAa+qLBUjLjgIJCooSRrbYGHZgM3NiLJsBQ=="
}
