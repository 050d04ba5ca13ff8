#!/bin/sh
# Registers the default namespace and loraflow's search attributes (idempotent).
set -eu
until temporal operator cluster health --address "$TEMPORAL_ADDRESS" | grep -q SERVING; do sleep 1; done
temporal operator namespace describe --address "$TEMPORAL_ADDRESS" --namespace default >/dev/null 2>&1 \
  || temporal operator namespace create --address "$TEMPORAL_ADDRESS" --namespace default
for attr in LoraStage LoraName LoraBaseModel LoraDatasetHash; do
  temporal operator search-attribute create --address "$TEMPORAL_ADDRESS" --namespace default --name "$attr" --type Keyword || true
done
