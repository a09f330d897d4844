using Amazon.Runtime;
using Amazon.S3;
using Integrations.Tests.Support;

namespace Integrations.Tests.Connectors;

/// <summary>
/// A real S3-compatible server (s3rver from npm, through tests/fixtures/s3-server.mjs) with one bucket, its objects in a
/// directory of its own; and an SDK client of the test's own, to look at the bucket beside the connector.
/// </summary>
public sealed class S3Service : IAsyncDisposable
{
    /// <summary>s3rver's one account: access key id and secret (it checks the key id; a Signature V4 it does not verify).</summary>
    public const string AccessKey = "S3RVER";

    private readonly DirectoryInfo _directory;
    private FixtureProcess _process = null!;

    private S3Service(DirectoryInfo directory) => _directory = directory;

    public string Url => _process.Address;

    public static async Task<S3Service> StartAsync(string bucket)
    {
        var service = new S3Service(Directory.CreateTempSubdirectory("s3rver-"));
        // s3rver encrypts its continuation tokens with DES, which OpenSSL 3 keeps in its legacy provider.
        service._process = await FixtureProcess.StartAsync("s3-server.mjs", "s3rver", ["--directory", service._directory.FullName, "--bucket", bucket], _ => { },
            ["--openssl-legacy-provider"]);
        return service;
    }

    public AmazonS3Client Client() => new(new BasicAWSCredentials(AccessKey, AccessKey), new AmazonS3Config
    {
        ServiceURL = Url,
        AuthenticationRegion = "us-east-1",
        ForcePathStyle = true,
        RequestChecksumCalculation = RequestChecksumCalculation.WHEN_REQUIRED,
        ResponseChecksumValidation = ResponseChecksumValidation.WHEN_REQUIRED,
    });

    public async ValueTask DisposeAsync()
    {
        await _process.DisposeAsync();
        _directory.Delete(recursive: true);
    }
}
