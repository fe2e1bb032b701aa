metadata description = 'The containers and the queue the app uses in the data account, whether this deployment created the account or it already existed. Deployed into the resource group of that account.'

@description('Name of the data storage account (new or existing) in this resource group.')
param accountName string

@description('Create the source container. False when pointing at an existing archive: its container must already exist and is left untouched.')
param createSourceContainer bool

param sourceContainerName string

param refsContainerName string

@description('Queue in which the blob extension parks blobs that failed every retry. It lives in the account of the triggering blob.')
param poisonQueueName string

@description('Queue of the fan-out backfill (REFERENCE_QUEUE): one message per file, read by the queue trigger.')
param referenceQueueName string

@description('Where the queues extension moves a reference message that failed maxDequeueCount times. The host would create it; it is created here so that its role assignment has a scope.')
param referencePoisonQueueName string

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

resource sourceContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2024-01-01' = if (createSourceContainer) {
  parent: blobService
  name: sourceContainerName
  properties: {
    publicAccess: 'None'
  }
}

// References and error records (refs/_errors/...) both live in this container.
resource refsContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2024-01-01' = {
  parent: blobService
  name: refsContainerName
  properties: {
    publicAccess: 'None'
  }
}

resource poisonQueue 'Microsoft.Storage/storageAccounts/queueServices/queues@2024-01-01' = {
  parent: queueService
  name: poisonQueueName
}

// The fan-out backfill: `ncrefs backfill --queue` sends, the queue trigger receives.
resource referenceQueue 'Microsoft.Storage/storageAccounts/queueServices/queues@2024-01-01' = {
  parent: queueService
  name: referenceQueueName
}

resource referencePoisonQueue 'Microsoft.Storage/storageAccounts/queueServices/queues@2024-01-01' = {
  parent: queueService
  name: referencePoisonQueueName
}

output id string = account.id
output name string = account.name
output location string = account.location
output blobEndpoint string = account.properties.primaryEndpoints.blob
output queueEndpoint string = account.properties.primaryEndpoints.queue
