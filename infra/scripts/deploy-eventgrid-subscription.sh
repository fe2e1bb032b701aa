#!/bin/sh
# Phase 2 of the ncrefs deployment: create the Event Grid subscriptions that feed the
# blob trigger (BlobCreated) and the deletion function (BlobDeleted)
# (infra/eventgrid-subscription.bicep).
#
# It runs after the code is deployed, because the webhooks need the blobs_extension and
# eventgrid_extension system keys, which the Functions host creates when it first loads the
# blob trigger and the Event Grid trigger, and because Event Grid validates each webhook (a
# handshake the running app must answer) when its subscription is created. The keys are read
# by the template itself (listKeys) and never pass through this script.
#
# Usage:
#   under azd: runs as the postdeploy hook (azure.yaml); the outputs of infra/main.bicep
#              are in the environment.
#   by hand:   infra/scripts/deploy-eventgrid-subscription.sh <resource-group> <main-deployment-name>
#              reads the same outputs from that deployment of infra/main.bicep.
# Needs the Azure CLI, signed in (az login).
set -eu

here=$(cd "$(dirname "$0")" && pwd)
template="$here/../eventgrid-subscription.bicep"
outputs="FUNCTION_APP_NAME HEALTH_URL SOURCE_CONTAINER EVENTGRID_SYSTEM_TOPIC_NAME EVENTGRID_SYSTEM_TOPIC_RESOURCE_GROUP EVENTGRID_DEADLETTER_STORAGE_ACCOUNT_ID EVENTGRID_DEADLETTER_CONTAINER"
attempts=${NCREFS_KEY_WAIT_ATTEMPTS:-30}
pause=${NCREFS_KEY_WAIT_SECONDS:-10}

fail() {
    echo "deploy-eventgrid-subscription: $*" >&2
    exit 1
}

wake() {
    if command -v curl >/dev/null 2>&1; then
        curl --silent --output /dev/null --max-time 30 "$HEALTH_URL" || true
    fi
}

command -v az >/dev/null 2>&1 || fail "the Azure CLI (az) is required: https://aka.ms/azure-cli"
az account show --output none >/dev/null 2>&1 || fail "sign in to the Azure CLI first: az login (then run this script again, or: azd hooks run postdeploy)"

if [ $# -ge 2 ]; then
    AZURE_RESOURCE_GROUP=$1
    deployment=$2
    for name in $outputs; do
        value=$(az deployment group show --resource-group "$AZURE_RESOURCE_GROUP" --name "$deployment" \
            --query "properties.outputs.$name.value" --output tsv) || fail "cannot read output $name of deployment $deployment"
        export "$name=$value"
    done
elif [ $# -ne 0 ]; then
    fail "usage: $0 [<resource-group> <main-deployment-name>]"
fi

: "${AZURE_RESOURCE_GROUP:?resource group of the function app (AZURE_RESOURCE_GROUP) is not set}"
for name in $outputs; do
    eval "value=\${$name:-}"
    [ -n "$value" ] || fail "$name is not set: run azd provision first, or pass <resource-group> <main-deployment-name>"
done

# Flex Consumption scales to zero: wake the app so its host loads the blob trigger and the Event
# Grid trigger and creates the blobs_extension and eventgrid_extension keys, then wait until both
# exist (only their presence is queried).
echo "Waiting for the blobs_extension and eventgrid_extension system keys of $FUNCTION_APP_NAME ..."
i=0
while :; do
    wake
    present=$(az functionapp keys list --resource-group "$AZURE_RESOURCE_GROUP" --name "$FUNCTION_APP_NAME" \
        --query 'systemKeys.blobs_extension != `null` && systemKeys.eventgrid_extension != `null`' --output tsv 2>/dev/null || true)
    case "$present" in
        [Tt]rue) break ;;
    esac
    i=$((i + 1))
    [ "$i" -lt "$attempts" ] || fail "no blobs_extension and eventgrid_extension keys after $attempts attempts: is the code deployed, with the blob trigger reference_from_blob using source EventGrid and the Event Grid trigger source_deleted?"
    sleep "$pause"
done

# Event Grid checks the endpoint while creating the subscription; a cold app can miss it once.
echo "Creating Event Grid subscriptions on $EVENTGRID_SYSTEM_TOPIC_NAME for container $SOURCE_CONTAINER ..."
try=1
until az deployment group create \
    --resource-group "$EVENTGRID_SYSTEM_TOPIC_RESOURCE_GROUP" \
    --name ncrefs-eventgrid-subscription \
    --template-file "$template" \
    --parameters \
        systemTopicName="$EVENTGRID_SYSTEM_TOPIC_NAME" \
        functionAppName="$FUNCTION_APP_NAME" \
        functionAppResourceGroup="$AZURE_RESOURCE_GROUP" \
        sourceContainerName="$SOURCE_CONTAINER" \
        deadLetterStorageAccountId="$EVENTGRID_DEADLETTER_STORAGE_ACCOUNT_ID" \
        deadLetterContainerName="$EVENTGRID_DEADLETTER_CONTAINER" \
    --output none; do
    [ "$try" -lt 3 ] || fail "the Event Grid subscriptions could not be created"
    try=$((try + 1))
    wake
    sleep "${NCREFS_RETRY_SECONDS:-20}"
done
echo "Event Grid subscriptions ready: new NetCDF blobs in $SOURCE_CONTAINER now trigger reference_from_blob, deleted ones source_deleted."
