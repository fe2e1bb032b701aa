metadata description = 'Event Grid system topic on the data storage account. Deployed into the resource group of that account, in its region. Its subscription is created after the code is deployed (eventgrid-subscription.bicep).'

@description('Name of the system topic. A storage account can have only one system topic: when the account already has one, give its name here to adopt it.')
param name string

@description('Region of the storage account (a system topic lives in the region of its source).')
param location string

param tags object = {}

@description('Resource id of the storage account whose events are published.')
param storageAccountId string

resource systemTopic 'Microsoft.EventGrid/systemTopics@2025-02-15' = {
  name: name
  location: location
  tags: tags
  // Used to write dead letters to the host storage account without keys.
  identity: {
    type: 'SystemAssigned'
  }
  properties: {
    source: storageAccountId
    topicType: 'Microsoft.Storage.StorageAccounts'
  }
}

output name string = systemTopic.name
output principalId string = systemTopic.identity.principalId
output resourceGroupName string = resourceGroup().name
