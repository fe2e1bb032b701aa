metadata description = 'Optional (deployTiles): the ncrefs tile server (tiles/, TiTiler over references and datasets) as its own Flex Consumption Python 3.12 function app, so titiler and rasterio never reach the ingestion app. Identity-based: its own user-assigned identity, read-only on the source and refs containers (roles-data.bicep), no keys or connection strings.'

param name string

param planName string

param location string

param tags object = {}

@description('Resource id of the tile server user-assigned identity (read-only on the data).')
param identityId string

@description('Client id of that identity.')
param identityClientId string

@description('Host storage (AzureWebJobsStorage) blob endpoint; the tile server uses only blobs (HTTP triggers).')
param hostBlobEndpoint string

@description('Container of the host storage account that holds the tile server package (scripts/package_tiles).')
param deploymentContainerName string

@description('Data storage (DATA_STORAGE) blob endpoint.')
param dataBlobEndpoint string

param sourceContainerName string

param refsContainerName string

param applicationInsightsName string

@description('Memory of each instance, in MB: titiler, rasterio and a dataset or two in memory.')
@allowed([
  2048
  4096
])
param instanceMemoryMB int = 2048

@description('Upper bound of instances.')
@minValue(40)
@maxValue(1000)
param maximumInstanceCount int = 40

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

resource tilesApp 'Microsoft.Web/sites@2024-04-01' = {
  name: name
  location: location
  tags: union(tags, { 'azd-service-name': 'tiles' })
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
      minTlsVersion: '1.2'
      appSettings: [
        {
          name: 'AzureWebJobsStorage__blobServiceUri'
          value: hostBlobEndpoint
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

output name string = tilesApp.name
output defaultHostName string = tilesApp.properties.defaultHostName
