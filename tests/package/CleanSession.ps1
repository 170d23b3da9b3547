# Starts pwsh the way a user's own session starts: a home of its own, none of the test run's GALLIUM_* variables, no
# PSModulePath inherited (pwsh then builds its default one from HOME), outside the source tree. GALLIUM_TEST_GUARD=1 is
# kept: nothing here may write to this machine's real /sys, whoever's suite it is.

function Get-PwshCommandLine {
    # Under 'dotnet pwsh' (the local tool) the process is dotnet running pwsh.dll; an installed pwsh is its own executable.
    $process = [Environment]::ProcessPath
    if ([IO.Path]::GetFileNameWithoutExtension($process) -eq 'dotnet') { @($process, (Join-Path $PSHOME 'pwsh.dll')) } else { @($process) }
}

function Invoke-CleanPwsh {
    param(
        [Parameter(Mandatory)] [string] $HomeDirectory,
        [Parameter(Mandatory)] [string] $Command,
        [Parameter(Mandatory)] [string] $WorkingDirectory
    )
    $saved = @{}
    $drop = @(Get-ChildItem env: | Where-Object { $_.Name -like 'GALLIUM_*' -and $_.Name -ne 'GALLIUM_TEST_GUARD' } | ForEach-Object Name) +
        @('PSModulePath', 'XDG_DATA_HOME', 'XDG_CONFIG_HOME', 'XDG_CACHE_HOME', 'LIBVIRT_DEFAULT_URI')
    foreach ($name in $drop) { $saved[$name] = [Environment]::GetEnvironmentVariable($name); [Environment]::SetEnvironmentVariable($name, $null) }
    $saved['HOME'] = $env:HOME; $env:HOME = $HomeDirectory
    $saved['GALLIUM_TEST_GUARD'] = $env:GALLIUM_TEST_GUARD; $env:GALLIUM_TEST_GUARD = '1'
    $line = Get-PwshCommandLine
    Push-Location $WorkingDirectory
    try {
        $encoded = [Convert]::ToBase64String([Text.Encoding]::Unicode.GetBytes($Command))
        & $line[0] @($line | Select-Object -Skip 1) -NoProfile -NonInteractive -EncodedCommand $encoded 2>&1 | ForEach-Object { "$_" }
    }
    finally {
        Pop-Location
        foreach ($name in $saved.Keys) { [Environment]::SetEnvironmentVariable($name, $saved[$name]) }
    }
}
