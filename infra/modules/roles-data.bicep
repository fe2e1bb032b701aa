metadata description = 'Least-privilege data-plane roles on the data account, each scoped to one container or queue, never to the account. Deployed into the resource group of that account.'

param accountName string

param sourceContainerName string

param refsContainerName string

param poisonQueueName string

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
