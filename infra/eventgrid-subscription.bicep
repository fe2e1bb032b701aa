metadata description = 'ncrefs phase 2 of 2: the Event Grid subscriptions that feed the blob trigger (BlobCreated) and the deletion function (BlobDeleted). Deploy it into the resource group of the system topic after the code is deployed: the blobs_extension and eventgrid_extension system keys it reads exist only once the Functions host has loaded the blob trigger and the Event Grid trigger, and Event Grid validates each webhook when its subscription is created.'

targetScope = 'resourceGroup'

@description('Event Grid system topic of the data account (main.bicep output EVENTGRID_SYSTEM_TOPIC_NAME), in this resource group.')
param systemTopicName string

@description('Function app (main.bicep output FUNCTION_APP_NAME).')
param functionAppName string

@description('Resource group of the function app.')
param functionAppResourceGroup string = resourceGroup().name

@description('Python function name of the blob trigger.')
param functionName string = 'reference_from_blob'

@description('Python function name of the Event Grid trigger that handles deleted sources.')
param deletedFunctionName string = 'source_deleted'

@description('Container with the NetCDF sources (the app setting SOURCE_CONTAINER).')
param sourceContainerName string = 'raw-netcdf'

@description('Blob name suffixes the app accepts. Event Grid compares them without regard to case.')
param netcdfSuffixes array = [
  '.nc'
  '.nc4'
  '.netcdf'
  '.h5'
  '.hdf5'
  '.he5'
]

@description('Storage account for undeliverable events (main.bicep output EVENTGRID_DEADLETTER_STORAGE_ACCOUNT_ID).')
param deadLetterStorageAccountId string

param deadLetterContainerName string = 'eventgrid-deadletter'

param subscriptionName string = 'ncrefs-netcdf-created'

param deletedSubscriptionName string = 'ncrefs-netcdf-deleted'

@minValue(1)
@maxValue(30)
param maxDeliveryAttempts int = 30

@description('Minutes Event Grid keeps retrying an event before dead-lettering it.')
@minValue(1)
@maxValue(1440)
param eventTimeToLiveInMinutes int = 1440

resource systemTopic 'Microsoft.EventGrid/systemTopics@2025-02-15' existing = {
  name: systemTopicName
}

resource functionApp 'Microsoft.Web/sites@2024-04-01' existing = {
  name: functionAppName
  scope: resourceGroup(functionAppResourceGroup)
}

resource functionHost 'Microsoft.Web/sites/host@2024-04-01' existing = {
  parent: functionApp
  name: 'default'
}

resource subscription 'Microsoft.EventGrid/systemTopics/eventSubscriptions@2025-02-15' = {
  parent: systemTopic
  name: subscriptionName
  properties: {
    eventDeliverySchema: 'EventGridSchema'
    destination: {
      endpointType: 'WebHook'
      properties: {
        // The blob extension endpoint. The key is read here and never leaves the deployment.
        endpointUrl: 'https://${functionApp.properties.defaultHostName}/runtime/webhooks/blobs?functionName=Host.Functions.${functionName}&code=${functionHost.listKeys().systemKeys.blobs_extension}'
        maxEventsPerBatch: 1
        preferredBatchSizeInKilobytes: 64
        minimumTlsVersionAllowed: '1.2'
      }
    }
    filter: {
      includedEventTypes: [
        'Microsoft.Storage.BlobCreated'
      ]
      subjectBeginsWith: '/blobServices/default/containers/${sourceContainerName}/blobs/'
      isSubjectCaseSensitive: false
      enableAdvancedFilteringOnArrays: true
      advancedFilters: [
        {
          operatorType: 'StringEndsWith'
          key: 'subject'
          values: netcdfSuffixes
        }
        {
          // On accounts with a hierarchical namespace, CreateFile announces an empty file;
          // FlushWithClose follows when its content is committed.
          operatorType: 'StringNotIn'
          key: 'data.api'
          values: [
            'CreateFile'
          ]
        }
      ]
    }
    retryPolicy: {
      maxDeliveryAttempts: maxDeliveryAttempts
      eventTimeToLiveInMinutes: eventTimeToLiveInMinutes
    }
    deadLetterWithResourceIdentity: {
      identity: {
        type: 'SystemAssigned'
      }
      deadLetterDestination: {
        endpointType: 'StorageBlob'
        properties: {
          resourceId: deadLetterStorageAccountId
          blobContainerName: deadLetterContainerName
        }
      }
    }
  }
}

// Deleted sources: their references, error records, STAC items and dataset memberships go (shared/prune.py).
// Events are at-least-once and unordered; the function acts only when the blob is really gone.
resource deletedSubscription 'Microsoft.EventGrid/systemTopics/eventSubscriptions@2025-02-15' = {
  parent: systemTopic
  name: deletedSubscriptionName
  properties: {
    eventDeliverySchema: 'EventGridSchema'
    destination: {
      endpointType: 'WebHook'
      properties: {
        // The Event Grid extension endpoint. The key is read here and never leaves the deployment.
        endpointUrl: 'https://${functionApp.properties.defaultHostName}/runtime/webhooks/eventgrid?functionName=${deletedFunctionName}&code=${functionHost.listKeys().systemKeys.eventgrid_extension}'
        maxEventsPerBatch: 1
        preferredBatchSizeInKilobytes: 64
        minimumTlsVersionAllowed: '1.2'
      }
    }
    filter: {
      includedEventTypes: [
        'Microsoft.Storage.BlobDeleted'
      ]
      subjectBeginsWith: '/blobServices/default/containers/${sourceContainerName}/blobs/'
      isSubjectCaseSensitive: false
      enableAdvancedFilteringOnArrays: true
      advancedFilters: [
        {
          // The names the blob trigger references; `ncrefs prune` catches any other (and deletions missed).
          operatorType: 'StringEndsWith'
          key: 'subject'
          values: netcdfSuffixes
        }
      ]
    }
    retryPolicy: {
      maxDeliveryAttempts: maxDeliveryAttempts
      eventTimeToLiveInMinutes: eventTimeToLiveInMinutes
    }
    deadLetterWithResourceIdentity: {
      identity: {
        type: 'SystemAssigned'
      }
      deadLetterDestination: {
        endpointType: 'StorageBlob'
        properties: {
          resourceId: deadLetterStorageAccountId
          blobContainerName: deadLetterContainerName
        }
      }
    }
  }
}

output subscriptionName string = subscription.name
output deletedSubscriptionName string = deletedSubscription.name
output webhookBaseUrl string = 'https://${functionApp.properties.defaultHostName}/runtime/webhooks/blobs'
