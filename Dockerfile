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
USER $APP_UID
# Apply migrations, then run the server. Arguments replace the server's own:
#   docker compose run --rm api create-api-key --tenant acme --scopes integrations:read,integrations:write
# runs migrate, then that host command.
ENTRYPOINT ["/bin/sh", "-c", "dotnet Integrations.Api.dll migrate && exec dotnet Integrations.Api.dll \"$@\"", "integrations"]
CMD []
