metadata description = 'ncrefs: kerchunk references for NetCDF blobs. Phase 1 of 2: everything but the Event Grid subscription, which needs the blob extension key of the deployed code (see eventgrid-subscription.bicep and README.md).'

targetScope = 'resourceGroup'

@description('Name of the environment (azd AZURE_ENV_NAME); salts the resource names.')
@minLength(1)
@maxLength(64)
param environmentName string

@description('Region of the new resources. Flex Consumption is not offered in every region.')
param location string = resourceGroup().location

@description('Name of an existing StorageV2 account that already holds the NetCDF archive. Empty: create a new data account.')
param existingSourceStorageAccountName string = ''

@description('Resource group of that existing account (same subscription). Empty: this resource group.')
param existingSourceStorageResourceGroup string = ''

@description('Container with the NetCDF sources. In an existing account it must already exist.')
@minLength(3)
@maxLength(63)
param sourceContainerName string = 'raw-netcdf'

@description('Container for the references (and refs/_errors/ records). Created if missing.')
@minLength(3)
@maxLength(63)
param refsContainerName string = 'refs'

@description('Queue of the fan-out backfill in the data account (REFERENCE_QUEUE): `ncrefs backfill --queue` puts one message per file on it and the queue trigger references them. Created with its poison queue (<name>-poison). 3-56 lowercase letters, digits and hyphens.')
@minLength(3)
@maxLength(56)
param referenceQueueName string = 'reference-requests'

@description('Name of the Event Grid system topic of the data account. An account can have only one: to adopt an existing one, give its name.')
param eventGridSystemTopicName string = ''

@description('Replication of the storage accounts this deployment creates.')
@allowed([
  'Standard_LRS'
  'Standard_ZRS'
  'Standard_GRS'
  'Standard_GZRS'
  'Standard_RAGRS'
  'Standard_RAGZRS'
])
param storageSku string = 'Standard_LRS'

@description('Memory of each function instance, in MB. The 512 of Flex Consumption is left out: the host, the Python worker and one parser process need more. Keep parseWorkers x parseMemoryMB + 400 within it.')
@allowed([
  2048
  4096
])
param instanceMemoryMB int = 2048

@description('Upper bound of function instances (Flex Consumption scales the queue trigger out to it: the fan-out backfill of an archive runs on up to this many instances; see README "Backfill at scale").')
@minValue(40)
@maxValue(1000)
param maximumInstanceCount int = 100

@description('Scheme of the chunk URLs written into references.')
@allowed([
  'abfs'
  'az'
  'https'
])
param referenceUrlScheme string = 'abfs'

@description('Reference format: json, parquet, or auto (parquet above the chunk threshold).')
@allowed([
  'auto'
  'json'
  'parquet'
])
param referenceFormat string = 'auto'

@minValue(1)
param parquetChunkThreshold int = 100000

@minValue(0)
param inlineThreshold int = 500

@minValue(512)
param readBlockSize int = 4096

@description('Seconds one file may take to parse before it fails with limits_exceeded.')
@minValue(1)
param parseTimeoutSeconds int = 120

@description('Address space (MB) of one parser process (RLIMIT_AS; a warm parser already takes ~300 of it). parseWorkers x this + 400 (host and worker) must fit instanceMemoryMB: 2 x 768 for 2048, 4 x 896 or 2 x 1536 for 4096.')
@minValue(512)
param parseMemoryMB int = 768

@description('Chunks one file may have in all (counted from its header, before any index is read).')
@minValue(1)
param maxChunks int = 2000000

@description('Bytes (MB) of a source one reference may read in all.')
@minValue(1)
param maxReadMB int = 256

@description('Parser processes per instance, kept warm: files parsed at once on an instance (more wait for a free one). See parseMemoryMB.')
@minValue(1)
@maxValue(64)
param parseWorkers int = 2

@description('Refuse a file with any variable Zarr cannot reference exactly, instead of leaving that variable out.')
param strictReferences bool = false

@description('After the blob trigger writes a reference, read the first chunk of each variable through it and from the original and compare them (VERIFY_AFTER_WRITE): a mismatch removes the reference and records verification_failed. Reads about one chunk per variable per file.')
param verifyAfterWrite bool = false

@description('Object id of the person or pipeline deploying (azd: AZURE_PRINCIPAL_ID). With grantDeployerDataAccess, it may upload to the source container and run the CLI (virtualize, backfill), which writes to the refs container.')
param deployerPrincipalId string = ''

@allowed([
  'User'
  'Group'
  'ServicePrincipal'
])
param deployerPrincipalType string = 'User'

@description('Give deployerPrincipalId data access for testing. Set false for production or shared archives.')
param grantDeployerDataAccess bool = true

@description('Also deploy the tile server (tiles/: TiTiler over references and datasets, and the /map page) as its own function app with a read-only identity. Its package is built by scripts/package_tiles and published by hand (README, Map tiles).')
param deployTiles bool = false

var resourceToken = toLower(uniqueString(subscription().id, resourceGroup().id, environmentName))
var tags = {
  'azd-env-name': environmentName
  application: 'ncrefs'
}

var useExistingSource = !empty(existingSourceStorageAccountName)
var dataAccountName = useExistingSource ? existingSourceStorageAccountName : 'stdata${resourceToken}'
var dataResourceGroupName = (useExistingSource && !empty(existingSourceStorageResourceGroup)) ? existingSourceStorageResourceGroup : resourceGroup().name
var hostAccountName = 'sthost${resourceToken}'
var systemTopicName = empty(eventGridSystemTopicName) ? 'evgt-${resourceToken}' : eventGridSystemTopicName
var deploymentContainerName = 'deployment-package'
var tilesDeploymentContainerName = 'tiles-package'
var deadLetterContainerName = 'eventgrid-deadletter'
// Fixed by the blob extension (HostQueueNames.BlobTriggerPoisonQueue).
var poisonQueueName = 'webjobs-blobtrigger-poison'
// The queues extension moves a message that failed maxDequeueCount times (host.json) to <queue>-poison.
var referencePoisonQueueName = '${referenceQueueName}-poison'

resource identity 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' = {
  name: 'id-${resourceToken}'
  location: location
  tags: tags
}

// The tile server's own identity (deployTiles): read-only on the data, nothing else there.
resource tilesIdentity 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' = if (deployTiles) {
  name: 'id-tiles-${resourceToken}'
  location: location
  tags: tags
}

// AzureWebJobsStorage, the deployment package and Event Grid dead letters. Never holds data.
module hostStorage 'modules/storage-account.bicep' = {
  name: 'host-storage-${resourceToken}'
  params: {
    name: hostAccountName
    location: location
    tags: tags
    skuName: storageSku
    containerNames: [
      deploymentContainerName
      deadLetterContainerName
      tilesDeploymentContainerName
    ]
  }
}

// A new data account, unless the app is pointed at an existing archive.
module newDataStorage 'modules/storage-account.bicep' = if (!useExistingSource) {
  name: 'data-storage-${resourceToken}'
  params: {
    name: dataAccountName
    location: location
    tags: tags
    skuName: storageSku
  }
}

module dataContainers 'modules/data-containers.bicep' = {
  name: 'data-containers-${resourceToken}'
  scope: resourceGroup(dataResourceGroupName)
  params: {
    accountName: dataAccountName
    createSourceContainer: !useExistingSource
    sourceContainerName: sourceContainerName
    refsContainerName: refsContainerName
    poisonQueueName: poisonQueueName
    referenceQueueName: referenceQueueName
    referencePoisonQueueName: referencePoisonQueueName
  }
  dependsOn: [
    newDataStorage
  ]
}

module monitoring 'modules/monitoring.bicep' = {
  name: 'monitoring-${resourceToken}'
  params: {
    logAnalyticsName: 'log-${resourceToken}'
    applicationInsightsName: 'appi-${resourceToken}'
    location: location
    tags: tags
  }
}

module eventGridTopic 'modules/eventgrid-topic.bicep' = {
  name: 'eventgrid-topic-${resourceToken}'
  scope: resourceGroup(dataResourceGroupName)
  params: {
    name: systemTopicName
    location: dataContainers.outputs.location
    tags: tags
    storageAccountId: dataContainers.outputs.id
  }
}

module rolesData 'modules/roles-data.bicep' = {
  name: 'roles-data-${resourceToken}'
  scope: resourceGroup(dataResourceGroupName)
  params: {
    accountName: dataAccountName
    sourceContainerName: sourceContainerName
    refsContainerName: refsContainerName
    poisonQueueName: poisonQueueName
    referenceQueueName: referenceQueueName
    referencePoisonQueueName: referencePoisonQueueName
    appPrincipalId: identity.properties.principalId
    deployerPrincipalId: grantDeployerDataAccess ? deployerPrincipalId : ''
    deployerPrincipalType: deployerPrincipalType
    tilesPrincipalId: deployTiles ? tilesIdentity.properties.principalId : ''
  }
  dependsOn: [
    dataContainers
  ]
}

module rolesHost 'modules/roles-host.bicep' = {
  name: 'roles-host-${resourceToken}'
  params: {
    hostStorageAccountName: hostStorage.outputs.name
    deadLetterContainerName: deadLetterContainerName
    applicationInsightsName: monitoring.outputs.applicationInsightsName
    appPrincipalId: identity.properties.principalId
    eventGridPrincipalId: eventGridTopic.outputs.principalId
    tilesPrincipalId: deployTiles ? tilesIdentity.properties.principalId : ''
  }
}

// Created after its roles, so that the host starts with access to its storage.
module functionApp 'modules/function-app.bicep' = {
  name: 'function-app-${resourceToken}'
  params: {
    name: 'func-${resourceToken}'
    planName: 'plan-${resourceToken}'
    location: location
    tags: tags
    serviceName: 'api'
    identityId: identity.id
    identityClientId: identity.properties.clientId
    hostBlobEndpoint: hostStorage.outputs.blobEndpoint
    hostQueueEndpoint: hostStorage.outputs.queueEndpoint
    hostTableEndpoint: hostStorage.outputs.tableEndpoint
    deploymentContainerName: deploymentContainerName
    dataBlobEndpoint: dataContainers.outputs.blobEndpoint
    dataQueueEndpoint: dataContainers.outputs.queueEndpoint
    sourceContainerName: sourceContainerName
    refsContainerName: refsContainerName
    applicationInsightsName: monitoring.outputs.applicationInsightsName
    referenceUrlScheme: referenceUrlScheme
    referenceFormat: referenceFormat
    parquetChunkThreshold: parquetChunkThreshold
    inlineThreshold: inlineThreshold
    readBlockSize: readBlockSize
    parseTimeoutSeconds: parseTimeoutSeconds
    parseMemoryMB: parseMemoryMB
    maxChunks: maxChunks
    maxReadMB: maxReadMB
    parseWorkers: parseWorkers
    strictReferences: strictReferences
    verifyAfterWrite: verifyAfterWrite
    referenceQueueName: referenceQueueName
    instanceMemoryMB: instanceMemoryMB
    maximumInstanceCount: maximumInstanceCount
  }
  dependsOn: [
    rolesHost
    rolesData
  ]
}

// The tile server (off by default), created after its roles.
module tilesApp 'modules/tiles-app.bicep' = if (deployTiles) {
  name: 'tiles-app-${resourceToken}'
  params: {
    name: 'func-tiles-${resourceToken}'
    planName: 'plan-tiles-${resourceToken}'
    location: location
    tags: tags
    identityId: tilesIdentity.id
    identityClientId: tilesIdentity.properties.clientId
    hostBlobEndpoint: hostStorage.outputs.blobEndpoint
    deploymentContainerName: tilesDeploymentContainerName
    dataBlobEndpoint: dataContainers.outputs.blobEndpoint
    sourceContainerName: sourceContainerName
    refsContainerName: refsContainerName
    applicationInsightsName: monitoring.outputs.applicationInsightsName
  }
  dependsOn: [
    rolesHost
    rolesData
  ]
}

// azd stores these outputs as environment variables; the post-deploy step reads them.
output FUNCTION_APP_NAME string = functionApp.outputs.name
output FUNCTION_APP_URL string = 'https://${functionApp.outputs.defaultHostName}'
output GENERATE_REFERENCE_URL string = 'https://${functionApp.outputs.defaultHostName}/api/generate-reference'
output HEALTH_URL string = 'https://${functionApp.outputs.defaultHostName}/api/health'
output STATUS_URL string = 'https://${functionApp.outputs.defaultHostName}/api/status'
output REFERENCE_QUEUE string = referenceQueueName
output DATA_STORAGE_ACCOUNT_NAME string = dataContainers.outputs.name
output DATA_STORAGE_RESOURCE_GROUP string = dataResourceGroupName
output DATA_STORAGE_BLOB_ENDPOINT string = dataContainers.outputs.blobEndpoint
output SOURCE_CONTAINER string = sourceContainerName
output REFS_CONTAINER string = refsContainerName
output HOST_STORAGE_ACCOUNT_NAME string = hostStorage.outputs.name
output APPLICATIONINSIGHTS_NAME string = monitoring.outputs.applicationInsightsName
output EVENTGRID_SYSTEM_TOPIC_NAME string = eventGridTopic.outputs.name
output EVENTGRID_SYSTEM_TOPIC_RESOURCE_GROUP string = eventGridTopic.outputs.resourceGroupName
output EVENTGRID_DEADLETTER_STORAGE_ACCOUNT_ID string = hostStorage.outputs.id
output EVENTGRID_DEADLETTER_CONTAINER string = deadLetterContainerName
output TILES_URL string = deployTiles ? 'https://${tilesApp.outputs.defaultHostName}' : ''
