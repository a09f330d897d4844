# syntax=docker/dockerfile:1
# Integrations API image. Build: docker build -t integrations .   (or: docker compose up --build)
# Configuration at run time: ConnectionStrings__Integrations, Integrations__Vault__MasterKey.

# ---- build ----
FROM mcr.microsoft.com/dotnet/sdk:10.0 AS build
WORKDIR /src
ENV DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1
# Central build settings first (global.json pins the SDK band, Directory.*.props the packages).
COPY global.json Directory.Build.props Directory.Packages.props ./
COPY src/ src/
RUN dotnet restore src/Integrations.Api/Integrations.Api.csproj
RUN dotnet publish src/Integrations.Api/Integrations.Api.csproj -c Release --no-restore \
      -o /app -p:UseAppHost=false

# ---- runtime ----
FROM mcr.microsoft.com/dotnet/aspnet:10.0 AS runtime
WORKDIR /app
COPY --from=build /app ./
# The aspnet image serves on ASPNETCORE_HTTP_PORTS (8080) on all interfaces, as the
# non-root "app" user.
ENV ASPNETCORE_HTTP_PORTS=8080 \
    DOTNET_CLI_TELEMETRY_OPTOUT=1
EXPOSE 8080
# With an owner connection string (ConnectionStrings__IntegrationsOwner) apply migrations first; then run the server.
# Arguments replace the server's own:
#   docker compose run --rm migrate create-api-key --tenant acme --scopes integrations:read,integrations:write
# runs migrate, then that host command. The API service has no owner connection string and only serves.
# The anchor volume's mount point belongs to the app user, so a named volume mounted there is writable.
USER root
RUN mkdir -p /anchors && chown $APP_UID /anchors
USER $APP_UID
ENTRYPOINT ["/bin/sh", "-c", "if [ -n \"${ConnectionStrings__IntegrationsOwner:-}\" ]; then dotnet Integrations.Api.dll migrate || exit 1; fi; exec dotnet Integrations.Api.dll \"$@\"", "integrations"]
CMD []
