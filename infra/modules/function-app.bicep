metadata description = 'Flex Consumption (FC1) Linux function app for Python 3.12. Every connection is identity-based through one user-assigned managed identity: no connection strings or keys in app settings.'

param name string

param planName string

param location string

param tags object = {}

@description('Name of the azd service deployed to this app (tag azd-service-name).')
param serviceName string = 'api'

@description('Resource id of the user-assigned identity used for storage, deployment and telemetry.')
param identityId string

@description('Client id of that identity.')
param identityClientId string

@description('Host storage (AzureWebJobsStorage) endpoints.')
param hostBlobEndpoint string

param hostQueueEndpoint string

param hostTableEndpoint string

@description('Container of the host storage account that holds the deployment package.')
param deploymentContainerName string

@description('Data storage (DATA_STORAGE) endpoints.')
param dataBlobEndpoint string

param dataQueueEndpoint string

param sourceContainerName string

param refsContainerName string

param applicationInsightsName string

param referenceUrlScheme string

param referenceFormat string

param parquetChunkThreshold int

param inlineThreshold int

param readBlockSize int

param parseTimeoutSeconds int

param parseMemoryMB int

param maxChunks int

param maxReadMB int

param parseWorkers int

param strictReferences bool

param verifyAfterWrite bool

@description('Queue of the fan-out backfill (REFERENCE_QUEUE), in the data account.')
param referenceQueueName string

@description('Memory of each instance, in MB (512 is too small for the app and a parser process).')
@allowed([
  2048
  4096
])
param instanceMemoryMB int = 2048

@description('Upper bound of instances the app scales out to.')
@minValue(40)
@maxValue(1000)
param maximumInstanceCount int = 100

resource applicationInsights 'Microsoft.Insights/components@2020-02-02' existing = {
  name: applicationInsightsName
}

resource plan 'Microsoft.Web/serverfarms@2024-04-01' = {
  name: planName
  location: location
  tags: tags
  kind: 'functionapp'
  sku: {
    tier: 'FlexConsumption'
    name: 'FC1'
  }
  properties: {
    reserved: true
  }
}

resource functionApp 'Microsoft.Web/sites@2024-04-01' = {
  name: name
  location: location
  tags: union(tags, { 'azd-service-name': serviceName })
  kind: 'functionapp,linux'
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: {
      '${identityId}': {}
    }
  }
  properties: {
    serverFarmId: plan.id
    httpsOnly: true
    siteConfig: {
      // No FTP/Kudu publishing settings: Flex Consumption runs the package from its blob container.
      minTlsVersion: '1.2'
      // Exactly the settings of local.settings.sample.json, in their Azure form
      // (tests/infra checks it). FUNCTIONS_WORKER_RUNTIME is functionAppConfig.runtime on Flex.
      appSettings: [
        {
          name: 'AzureWebJobsStorage__blobServiceUri'
          value: hostBlobEndpoint
        }
        {
          name: 'AzureWebJobsStorage__queueServiceUri'
          value: hostQueueEndpoint
        }
        {
          name: 'AzureWebJobsStorage__tableServiceUri'
          value: hostTableEndpoint
        }
        {
          name: 'AzureWebJobsStorage__credential'
          value: 'managedidentity'
        }
        {
          name: 'AzureWebJobsStorage__clientId'
          value: identityClientId
        }
        {
          name: 'DATA_STORAGE__blobServiceUri'
          value: dataBlobEndpoint
        }
        {
          name: 'DATA_STORAGE__queueServiceUri'
          value: dataQueueEndpoint
        }
        {
          name: 'DATA_STORAGE__credential'
          value: 'managedidentity'
        }
        {
          name: 'DATA_STORAGE__clientId'
          value: identityClientId
        }
        {
          name: 'SOURCE_CONTAINER'
          value: sourceContainerName
        }
        {
          name: 'REFS_CONTAINER'
          value: refsContainerName
        }
        {
          name: 'REFERENCE_URL_SCHEME'
          value: referenceUrlScheme
        }
        {
          name: 'REFERENCE_FORMAT'
          value: referenceFormat
        }
        {
          name: 'PARQUET_CHUNK_THRESHOLD'
          value: string(parquetChunkThreshold)
        }
        {
          name: 'INLINE_THRESHOLD'
          value: string(inlineThreshold)
        }
        {
          name: 'READ_BLOCK_SIZE'
          value: string(readBlockSize)
        }
        {
          name: 'PARSE_TIMEOUT_S'
          value: string(parseTimeoutSeconds)
        }
        {
          name: 'PARSE_MEMORY_MB'
          value: string(parseMemoryMB)
        }
        {
          name: 'MAX_CHUNKS'
          value: string(maxChunks)
        }
        {
          name: 'MAX_READ_MB'
          value: string(maxReadMB)
        }
        {
          name: 'PARSE_WORKERS'
          value: string(parseWorkers)
        }
        {
          name: 'STRICT_REFERENCES'
          value: string(strictReferences)
        }
        {
          name: 'VERIFY_AFTER_WRITE'
          value: string(verifyAfterWrite)
        }
        {
          name: 'REFERENCE_QUEUE'
          value: referenceQueueName
        }
        {
          name: 'BLOB_TRIGGER_SOURCE'
          value: 'EventGrid'
        }
        {
          // Not a secret: with local authentication disabled, ingestion also needs an Entra token.
          name: 'APPLICATIONINSIGHTS_CONNECTION_STRING'
          value: applicationInsights.properties.ConnectionString
        }
        {
          name: 'APPLICATIONINSIGHTS_AUTHENTICATION_STRING'
          value: 'ClientId=${identityClientId};Authorization=AAD'
        }
      ]
    }
    functionAppConfig: {
      deployment: {
        storage: {
          type: 'blobContainer'
          value: '${hostBlobEndpoint}${deploymentContainerName}'
          authentication: {
            type: 'UserAssignedIdentity'
            userAssignedIdentityResourceId: identityId
          }
        }
      }
      scaleAndConcurrency: {
        instanceMemoryMB: instanceMemoryMB
        maximumInstanceCount: maximumInstanceCount
      }
      runtime: {
        name: 'python'
        version: '3.12'
      }
    }
  }
}

output name string = functionApp.name
output id string = functionApp.id
output defaultHostName string = functionApp.properties.defaultHostName
