metadata description = 'Least-privilege data-plane roles on the data account, each scoped to one container or queue, never to the account. Deployed into the resource group of that account.'

param accountName string

param sourceContainerName string

param refsContainerName string

param poisonQueueName string

@description('Queue of the fan-out backfill (REFERENCE_QUEUE) and its poison queue.')
param referenceQueueName string

param referencePoisonQueueName string

@description('Principal (object) id of the function app user-assigned identity.')
param appPrincipalId string

@description('Optional principal (the deployer) that may upload test files to the source container and run the CLI: it writes references and error records. Empty: no access.')
param deployerPrincipalId string = ''

@allowed([
  'User'
  'Group'
  'ServicePrincipal'
])
param deployerPrincipalType string = 'User'

@description('Principal (object) id of the tile server identity (deployTiles). Empty: no tile server, no grants.')
param tilesPrincipalId string = ''

// Built-in role definition ids.
var roles = {
  storageBlobDataReader: '2a2b9908-6ea1-4ae2-8e65-a410df84e7d1'
  storageBlobDataContributor: 'ba92f5b4-2d11-453d-a403-e96b0029c9fe'
  storageQueueDataContributor: '974c5e8b-45b9-4653-ba55-5f855dd0fb88'
  storageQueueDataReader: '19e7f393-937e-4f77-808e-94535e297925'
}

resource account 'Microsoft.Storage/storageAccounts@2024-01-01' existing = {
  name: accountName
}

resource blobService 'Microsoft.Storage/storageAccounts/blobServices@2024-01-01' existing = {
  parent: account
  name: 'default'
}

resource queueService 'Microsoft.Storage/storageAccounts/queueServices@2024-01-01' existing = {
  parent: account
  name: 'default'
}

resource sourceContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2024-01-01' existing = {
  parent: blobService
  name: sourceContainerName
}

resource refsContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2024-01-01' existing = {
  parent: blobService
  name: refsContainerName
}

resource poisonQueue 'Microsoft.Storage/storageAccounts/queueServices/queues@2024-01-01' existing = {
  parent: queueService
  name: poisonQueueName
}

resource referenceQueue 'Microsoft.Storage/storageAccounts/queueServices/queues@2024-01-01' existing = {
  parent: queueService
  name: referenceQueueName
}

resource referencePoisonQueue 'Microsoft.Storage/storageAccounts/queueServices/queues@2024-01-01' existing = {
  parent: queueService
  name: referencePoisonQueueName
}

// The blob trigger and the HTTP function read sources: read-only.
resource appReadsSource 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(sourceContainer.id, appPrincipalId, roles.storageBlobDataReader)
  scope: sourceContainer
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.storageBlobDataReader)
    principalId: appPrincipalId
    principalType: 'ServicePrincipal'
    description: 'ncrefs reads NetCDF sources'
  }
}

// References and error records are written here.
resource appWritesRefs 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(refsContainer.id, appPrincipalId, roles.storageBlobDataContributor)
  scope: refsContainer
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.storageBlobDataContributor)
    principalId: appPrincipalId
    principalType: 'ServicePrincipal'
    description: 'ncrefs writes references and error records'
  }
}

// The blob extension moves a blob that failed every retry to this queue.
resource appPoisonQueue 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(poisonQueue.id, appPrincipalId, roles.storageQueueDataContributor)
  scope: poisonQueue
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.storageQueueDataContributor)
    principalId: appPrincipalId
    principalType: 'ServicePrincipal'
    description: 'Blob trigger poison messages'
  }
}

// The queue trigger: the Functions docs name Storage Queue Data Reader + Message Processor for a trigger, but the
// queues extension also updates messages (it keeps a long invocation's message invisible and releases a failed one:
// Update Message, messages/write) and GET /api/status reads the counts: Contributor, on this one queue only.
resource appReferenceQueue 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(referenceQueue.id, appPrincipalId, roles.storageQueueDataContributor)
  scope: referenceQueue
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.storageQueueDataContributor)
    principalId: appPrincipalId
    principalType: 'ServicePrincipal'
    description: 'ncrefs queue trigger (fan-out backfill)'
  }
}

// The host creates it if missing and moves messages that failed maxDequeueCount times into it.
resource appReferencePoisonQueue 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(referencePoisonQueue.id, appPrincipalId, roles.storageQueueDataContributor)
  scope: referencePoisonQueue
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.storageQueueDataContributor)
    principalId: appPrincipalId
    principalType: 'ServicePrincipal'
    description: 'ncrefs queue trigger poison messages'
  }
}

resource deployerUploadsSources 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (!empty(deployerPrincipalId)) {
  name: guid(sourceContainer.id, deployerPrincipalId, roles.storageBlobDataContributor)
  scope: sourceContainer
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.storageBlobDataContributor)
    principalId: deployerPrincipalId
    principalType: deployerPrincipalType
    description: 'Deployer uploads test files'
  }
}

// The CLI's virtualize and backfill write references and error records (and delete stale ones).
resource deployerWritesRefs 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (!empty(deployerPrincipalId)) {
  name: guid(refsContainer.id, deployerPrincipalId, roles.storageBlobDataContributor)
  scope: refsContainer
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.storageBlobDataContributor)
    principalId: deployerPrincipalId
    principalType: deployerPrincipalType
    description: 'Deployer runs the ncrefs CLI (virtualize, backfill)'
  }
}

// `ncrefs backfill --queue` sends one message per file (and creates the queue if missing); `ncrefs status` counts.
resource deployerFillsQueue 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (!empty(deployerPrincipalId)) {
  name: guid(referenceQueue.id, deployerPrincipalId, roles.storageQueueDataContributor)
  scope: referenceQueue
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.storageQueueDataContributor)
    principalId: deployerPrincipalId
    principalType: deployerPrincipalType
    description: 'Deployer runs ncrefs backfill --queue'
  }
}

// `ncrefs status` counts the poisoned messages.
resource deployerReadsPoisonQueue 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (!empty(deployerPrincipalId)) {
  name: guid(referencePoisonQueue.id, deployerPrincipalId, roles.storageQueueDataReader)
  scope: referencePoisonQueue
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.storageQueueDataReader)
    principalId: deployerPrincipalId
    principalType: deployerPrincipalType
    description: 'Deployer runs ncrefs status'
  }
}

// The tile server (optional, deployTiles) only reads: sources through references' chunk URLs, and references/datasets.
resource tilesReadsSource 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (!empty(tilesPrincipalId)) {
  name: guid(sourceContainer.id, tilesPrincipalId, roles.storageBlobDataReader)
  scope: sourceContainer
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.storageBlobDataReader)
    principalId: tilesPrincipalId
    principalType: 'ServicePrincipal'
    description: 'ncrefs tile server reads NetCDF chunks'
  }
}

resource tilesReadsRefs 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (!empty(tilesPrincipalId)) {
  name: guid(refsContainer.id, tilesPrincipalId, roles.storageBlobDataReader)
  scope: refsContainer
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.storageBlobDataReader)
    principalId: tilesPrincipalId
    principalType: 'ServicePrincipal'
    description: 'ncrefs tile server reads references and datasets'
  }
}
