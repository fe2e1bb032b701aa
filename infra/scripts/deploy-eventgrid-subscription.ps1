# Phase 2 of the ncrefs deployment (Windows twin of deploy-eventgrid-subscription.sh):
# create the Event Grid subscriptions that feed the blob trigger (BlobCreated) and the deletion
# function (BlobDeleted) (infra/eventgrid-subscription.bicep) once the code is deployed and the
# blobs_extension and eventgrid_extension system keys exist.
#
# Usage:
#   under azd: runs as the postdeploy hook (azure.yaml); the outputs of infra/main.bicep are in the environment.
#   by hand:   ./infra/scripts/deploy-eventgrid-subscription.ps1 -ResourceGroup <rg> -Deployment <main-deployment-name>
# Needs the Azure CLI, signed in (az login).
param(
    [string]$ResourceGroup = '',
    [string]$Deployment = ''
)
$ErrorActionPreference = 'Stop'

$template = Join-Path $PSScriptRoot '..' 'eventgrid-subscription.bicep'
$outputs = @(
    'FUNCTION_APP_NAME', 'HEALTH_URL', 'SOURCE_CONTAINER', 'EVENTGRID_SYSTEM_TOPIC_NAME',
    'EVENTGRID_SYSTEM_TOPIC_RESOURCE_GROUP', 'EVENTGRID_DEADLETTER_STORAGE_ACCOUNT_ID', 'EVENTGRID_DEADLETTER_CONTAINER'
)
$attempts = if ($env:NCREFS_KEY_WAIT_ATTEMPTS) { [int]$env:NCREFS_KEY_WAIT_ATTEMPTS } else { 30 }
$pause = if ($env:NCREFS_KEY_WAIT_SECONDS) { [int]$env:NCREFS_KEY_WAIT_SECONDS } else { 10 }

function Fail([string]$message) {
    Write-Error "deploy-eventgrid-subscription: $message"
    exit 1
}

function Wake {
    try { Invoke-WebRequest -Uri $env:HEALTH_URL -TimeoutSec 30 -UseBasicParsing | Out-Null } catch { }
}

if (-not (Get-Command az -ErrorAction SilentlyContinue)) { Fail 'the Azure CLI (az) is required: https://aka.ms/azure-cli' }
az account show --output none 2>$null
if ($LASTEXITCODE -ne 0) { Fail 'sign in to the Azure CLI first: az login (then run this script again, or: azd hooks run postdeploy)' }

if ($ResourceGroup -and $Deployment) {
    $env:AZURE_RESOURCE_GROUP = $ResourceGroup
    foreach ($name in $outputs) {
        $value = az deployment group show --resource-group $ResourceGroup --name $Deployment --query "properties.outputs.$name.value" --output tsv
        if ($LASTEXITCODE -ne 0) { Fail "cannot read output $name of deployment $Deployment" }
        Set-Item -Path "env:$name" -Value $value
    }
}

if (-not $env:AZURE_RESOURCE_GROUP) { Fail 'resource group of the function app (AZURE_RESOURCE_GROUP) is not set' }
foreach ($name in $outputs) {
    if (-not (Get-Item -Path "env:$name" -ErrorAction SilentlyContinue).Value) {
        Fail "$name is not set: run azd provision first, or pass -ResourceGroup and -Deployment"
    }
}

Write-Host "Waiting for the blobs_extension and eventgrid_extension system keys of $env:FUNCTION_APP_NAME ..."
$ready = $false
for ($i = 1; $i -le $attempts; $i++) {
    Wake
    $present = az functionapp keys list --resource-group $env:AZURE_RESOURCE_GROUP --name $env:FUNCTION_APP_NAME --query 'systemKeys.blobs_extension != `null` && systemKeys.eventgrid_extension != `null`' --output tsv 2>$null
    if ($LASTEXITCODE -eq 0 -and "$present" -match '^true$') { $ready = $true; break }
    Start-Sleep -Seconds $pause
}
if (-not $ready) { Fail "no blobs_extension and eventgrid_extension keys after $attempts attempts: is the code deployed, with the blob trigger reference_from_blob using source EventGrid and the Event Grid trigger source_deleted?" }

Write-Host "Creating Event Grid subscriptions on $env:EVENTGRID_SYSTEM_TOPIC_NAME for container $env:SOURCE_CONTAINER ..."
for ($try = 1; $try -le 3; $try++) {
    az deployment group create `
        --resource-group $env:EVENTGRID_SYSTEM_TOPIC_RESOURCE_GROUP `
        --name ncrefs-eventgrid-subscription `
        --template-file $template `
        --parameters `
            systemTopicName=$env:EVENTGRID_SYSTEM_TOPIC_NAME `
            functionAppName=$env:FUNCTION_APP_NAME `
            functionAppResourceGroup=$env:AZURE_RESOURCE_GROUP `
            sourceContainerName=$env:SOURCE_CONTAINER `
            deadLetterStorageAccountId=$env:EVENTGRID_DEADLETTER_STORAGE_ACCOUNT_ID `
            deadLetterContainerName=$env:EVENTGRID_DEADLETTER_CONTAINER `
        --output none
    if ($LASTEXITCODE -eq 0) {
        Write-Host "Event Grid subscriptions ready: new NetCDF blobs in $env:SOURCE_CONTAINER now trigger reference_from_blob, deleted ones source_deleted."
        exit 0
    }
    Wake
    Start-Sleep -Seconds 20
}
Fail 'the Event Grid subscriptions could not be created'
